use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a configuration or profile file, located as precisely as we can.
///
/// Displays like a compiler diagnostic, `site.toml:12:1: unknown field ...`, so editors and
/// terminals can jump to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when the problem has a place in the file.
    pub position: Option<(usize, usize)>,
    /// What is wrong and what is expected instead.
    pub message: String,
}

impl ConfigError {
    /// An error at `span` (byte offsets into `text`, the file's contents).
    pub fn at(path: &Path, text: &str, span: Option<Range<usize>>, message: String) -> Self {
        Self {
            file: path.to_path_buf(),
            position: span.map(|s| super::line_col(text, s.start)),
            message,
        }
    }

    /// An error about the file as a whole (missing, unreadable).
    pub fn file(path: &Path, message: String) -> Self {
        Self {
            file: path.to_path_buf(),
            position: None,
            message,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.file.display(), self.message)
            }
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one check, so an integrator fixes them all in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, err) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{err}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(err: ConfigError) -> Self {
        Self(vec![err])
    }
}
