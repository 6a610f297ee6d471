//! How a command fails, and so how the process exits: every command and the argument parser
//! answer with it.

pub enum Failure {
    /// Bad command line: exit 2.
    Usage(String),
    /// The command could not do its job: exit 1.
    Error(String),
}

pub fn err(msg: impl Into<String>) -> Failure {
    Failure::Error(msg.into())
}
