//! One error type for every layer of kiln.
//!
//! Errors carry a *kind* (so tests and callers can match on what went wrong without parsing
//! text) and a *location* (the node and op, or the line and column of a text file) so a user
//! with a 500-node model learns which node is at fault, not just that something is.

use std::fmt;

/// What went wrong, coarse enough to be stable across refactors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A file could not be read or written.
    Io,
    /// Malformed or truncated protobuf.
    Decode,
    /// An op kiln does not know (type, domain or opset version).
    UnsupportedOp,
    /// A known op used with a feature, attribute value or element type kiln does not support.
    Unsupported,
    /// A missing or wrongly typed attribute.
    Attribute,
    /// A use of a value that nothing defines.
    UndefinedValue,
    /// The graph has a cycle.
    Cycle,
    /// A value defined twice.
    DuplicateDefinition,
    /// Shapes that do not agree.
    Shape,
    /// Element types that do not agree.
    Type,
    /// A model that breaks a structural rule (no outputs, inconsistent tensor data, ...).
    InvalidModel,
    /// Bad user input on the command line or in input files.
    Input,
    /// Syntax error in kiln's text format.
    Parse,
    /// The verifier rejected the IR (after parsing or after a pass).
    Verify,
    /// An op failed while executing (e.g. an index out of range).
    Eval,
    /// An unknown pass or pipeline name.
    Pass,
}

impl ErrorKind {
    /// Stable kebab-case name, used by test manifests and `--json` reports.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Io => "io",
            ErrorKind::Decode => "decode",
            ErrorKind::UnsupportedOp => "unsupported-op",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Attribute => "attribute",
            ErrorKind::UndefinedValue => "undefined-value",
            ErrorKind::Cycle => "cycle",
            ErrorKind::DuplicateDefinition => "duplicate-definition",
            ErrorKind::Shape => "shape",
            ErrorKind::Type => "type",
            ErrorKind::InvalidModel => "invalid-model",
            ErrorKind::Input => "input",
            ErrorKind::Parse => "parse",
            ErrorKind::Verify => "verify",
            ErrorKind::Eval => "eval",
            ErrorKind::Pass => "pass",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where an error happened.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Location {
    #[default]
    Unknown,
    /// A graph node: its name (may be empty in ONNX) and op type.
    Node { name: String, op: String },
    /// A position in a text file (1-based).
    Text { line: usize, col: usize },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Unknown => Ok(()),
            Location::Node { name, op } if name.is_empty() => write!(f, "unnamed {op} node"),
            Location::Node { name, op } => write!(f, "node '{name}' ({op})"),
            Location::Text { line, col } => write!(f, "{line}:{col}"),
        }
    }
}

/// kiln's error: a kind, a location and a human sentence.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct Error {
    pub kind: ErrorKind,
    pub location: Location,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Location::Unknown => write!(f, "{}: {}", self.kind, self.message),
            _ => write!(f, "{}: {}: {}", self.location, self.kind, self.message),
        }
    }
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            location: Location::Unknown,
            message: message.into(),
        }
    }

    /// Attaches a node location unless a more precise one is already set.
    pub fn at_node(mut self, name: &str, op: &str) -> Self {
        if self.location == Location::Unknown {
            self.location = Location::Node {
                name: name.to_string(),
                op: op.to_string(),
            };
        }
        self
    }

    pub fn at_text(mut self, line: usize, col: usize) -> Self {
        self.location = Location::Text { line, col };
        self
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `bail!(Kind, "fmt", args)` returns an `Err(Error)` of that kind.
#[macro_export]
macro_rules! bail {
    ($kind:ident, $($arg:tt)+) => {
        return Err($crate::Error::new($crate::ErrorKind::$kind, format!($($arg)+)))
    };
}

/// `err!(Kind, "fmt", args)` builds an `Error` of that kind.
#[macro_export]
macro_rules! err {
    ($kind:ident, $($arg:tt)+) => {
        $crate::Error::new($crate::ErrorKind::$kind, format!($($arg)+))
    };
}

/// `ensure!(cond, Kind, "fmt", args)` bails unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $kind:ident, $($arg:tt)+) => {
        if !$cond {
            $crate::bail!($kind, $($arg)+);
        }
    };
}
