//! Progress of an image build, for a spinner or a log: the library prints nothing itself.

/// What a build is doing. Steps do not nest: each `start` is followed by its `finish`, even
/// when the step fails.
pub trait Reporter {
    /// A long step begins: installing the environment, reading the base image, pushing.
    fn start(&self, message: &str);
    /// What the current step is doing now (an installer's progress).
    fn step(&self, message: &str);
    /// The current step is over, done or failed.
    fn finish(&self);
}

/// A reporter that says nothing.
pub struct Quiet;

impl Reporter for Quiet {
    fn start(&self, _message: &str) {}
    fn step(&self, _message: &str) {}
    fn finish(&self) {}
}

/// An installer's progress (`terrarium_env`), passed on as steps.
pub(crate) struct Steps<'a>(pub &'a dyn Reporter);

impl terrarium_env::Reporter for Steps<'_> {
    fn step(&self, message: &str) {
        self.0.step(message);
    }
}
