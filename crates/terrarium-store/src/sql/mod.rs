//! The store written once: every [`Store`](crate::Store) operation, its versioning rules and
//! its SQL, over a small [`Conn`] that each backend implements for its transactions.
//!
//! The SQL is the common subset of SQLite and PostgreSQL, with `?1`-style placeholders (the
//! PostgreSQL backend numbers them `$1`). Booleans are bound as parameters and read back as
//! integers, never written as literals. What truly differs is asked of the connection: row
//! locks ([`Conn::for_update`]) and how a new row gets its creation order ([`Conn::next_seq`]).
//!
//! A backend implements [`Backend`]: its read and write transactions, the write one committing
//! with the request's audit row ([`insert_audit`], see [`crate::audit`]). It is then a `Store`
//! through the implementation in `store.rs`. Opening, migrations and locking stay in the
//! backend.

use crate::StoreError;

/// The parameters of a statement, each converted with [`Value::from`].
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        &[$($crate::sql::Value::from($value)),*]
    };
}

mod store;

pub use store::insert_audit;

/// A parameter bound to a statement.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// For `INTEGER` columns, which PostgreSQL keeps in 4 bytes.
    I32(i32),
    /// For `BIGINT` columns, counts and limits.
    I64(i64),
    Bool(bool),
    /// Text, or NULL (only text columns are ever set to NULL).
    Text(Option<&'a str>),
    Bytes(&'a [u8]),
}

/// Each Rust type a parameter comes as, and its [`Value`].
macro_rules! value_from {
    ($($type:ty => |$v:ident| $value:expr,)*) => {
        $(impl<'a> From<$type> for Value<'a> {
            fn from($v: $type) -> Self {
                $value
            }
        })*
    };
}

value_from! {
    i32 => |n| Value::I32(n),
    i64 => |n| Value::I64(n),
    bool => |b| Value::Bool(b),
    &'a str => |text| Value::Text(Some(text)),
    &'a String => |text| Value::Text(Some(text)),
    Option<&'a str> => |text| Value::Text(text),
    &'a Option<String> => |text| Value::Text(text.as_deref()),
    &'a [u8] => |bytes| Value::Bytes(bytes),
}

/// One column of a result row. Booleans read as integers (0, 1), as SQLite stores them.
#[derive(Debug, Clone, Default)]
pub enum Column {
    #[default]
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

/// What a column can be read as.
pub trait FromColumn: Sized {
    fn from_column(column: Column) -> Option<Self>;
}

impl FromColumn for String {
    fn from_column(column: Column) -> Option<Self> {
        match column {
            Column::Text(text) => Some(text),
            _ => None,
        }
    }
}

impl FromColumn for i64 {
    fn from_column(column: Column) -> Option<Self> {
        match column {
            Column::Int(value) => Some(value),
            _ => None,
        }
    }
}

impl FromColumn for i32 {
    fn from_column(column: Column) -> Option<Self> {
        i64::from_column(column).and_then(|value| i32::try_from(value).ok())
    }
}

impl FromColumn for bool {
    fn from_column(column: Column) -> Option<Self> {
        i64::from_column(column).map(|value| value != 0)
    }
}

impl FromColumn for Vec<u8> {
    fn from_column(column: Column) -> Option<Self> {
        match column {
            Column::Bytes(bytes) => Some(bytes),
            _ => None,
        }
    }
}

impl<T: FromColumn> FromColumn for Option<T> {
    fn from_column(column: Column) -> Option<Self> {
        match column {
            Column::Null => Some(None),
            column => T::from_column(column).map(Some),
        }
    }
}

/// A result row.
#[derive(Debug)]
pub struct Row(pub Vec<Column>);

impl Row {
    /// Take column `index` out of the row (it reads as NULL afterwards).
    pub fn take<T: FromColumn>(&mut self, index: usize) -> Result<T, StoreError> {
        let column = self.0.get_mut(index).map(std::mem::take);
        column.and_then(T::from_column).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "column {index} of a result is not {}",
                std::any::type_name::<T>()
            ))
        })
    }
}

/// A transaction, as the store's operations use it.
pub trait Conn {
    /// Run one statement; the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64, StoreError>;

    /// Every row a statement returns (a `SELECT`, or a change with `RETURNING`).
    fn query(&mut self, sql: &str, params: &[Value<'_>]) -> Result<Vec<Row>, StoreError>;

    /// The clause that makes a `SELECT` lock the rows it reads until commit: PostgreSQL's
    /// ` FOR UPDATE`; nothing for SQLite, whose write transaction holds the whole database.
    fn for_update(&self) -> &'static str;

    /// The value of a new row's `seq` column (workspace-wide creation order) in `table`.
    fn next_seq(&self, table: &str) -> String;
}

impl dyn Conn + '_ {
    /// The first row a statement returns, if any.
    pub fn query_opt(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The first column of the first row, if there is a row.
    pub fn value<T: FromColumn>(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
    ) -> Result<Option<T>, StoreError> {
        self.query_opt(sql, params)?
            .map(|mut row| row.take(0))
            .transpose()
    }

    /// The first column of every row.
    pub fn column<T: FromColumn>(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
    ) -> Result<Vec<T>, StoreError> {
        self.query(sql, params)?
            .into_iter()
            .map(|mut row| row.take(0))
            .collect()
    }
}

/// What a backend provides to be a [`Store`](crate::Store): its transactions.
pub trait Backend: Send + Sync {
    /// Run `f` in a transaction that only reads, over one consistent snapshot.
    fn read<T>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>;

    /// Run `f` in a write transaction and commit it through [`crate::audit::commit`] with
    /// [`insert_audit`]. A backend may run `f` again when its database asks for a retry.
    fn write<T>(&self, f: impl Fn(&mut dyn Conn) -> Result<T, StoreError>)
        -> Result<T, StoreError>;
}
