//! Field-path config errors, collected rather than returned one at a time.

/// One problem in a config, at a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Field path, e.g. `static_resources.clusters[1].lb_policy`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The conversion context: the current field path, the errors found so far, and the
/// filters this load knows.
pub struct Ctx {
    path: Vec<String>,
    /// Errors collected so far.
    pub errors: Vec<ConfigError>,
    /// The filters (their config factories) by config type.
    pub extensions: &'static dyn crate::filters::Extensions,
}

impl Default for Ctx {
    fn default() -> Ctx {
        Ctx::new(&crate::filters::NoExtensions)
    }
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("path", &self.path())
            .field("errors", &self.errors)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    /// A context at the root, knowing the filters of `extensions`.
    pub fn new(extensions: &'static dyn crate::filters::Extensions) -> Ctx {
        Ctx {
            path: Vec::new(),
            errors: Vec::new(),
            extensions,
        }
    }

    /// Runs `f` with `segment` appended to the path (`name` or `name[3]`).
    pub fn at<T>(&mut self, segment: impl Into<String>, f: impl FnOnce(&mut Ctx) -> T) -> T {
        self.path.push(segment.into());
        let out = f(self);
        self.path.pop();
        out
    }

    /// The current path, dotted.
    pub fn path(&self) -> String {
        let mut s = String::new();
        for seg in &self.path {
            if !s.is_empty() && !seg.starts_with('[') {
                s.push('.');
            }
            s.push_str(seg);
        }
        s
    }

    /// Records an error at the current path.
    pub fn error(&mut self, message: impl Into<String>) {
        let path = self.path();
        self.errors.push(ConfigError {
            path,
            message: message.into(),
        });
    }

    /// Records an error at `field` below the current path.
    pub fn error_at(&mut self, field: &str, message: impl Into<String>) {
        let message = message.into();
        self.at(field, |c| c.error(message));
    }
}
