//! terrarium-store
