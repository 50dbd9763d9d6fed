//! App Mesh's errors: each is an HTTP status, an error code that clients read from the
//! `x-amzn-ErrorType` header, and a message (`{"message": ...}`).

use http::StatusCode;

/// An error as App Mesh's API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The error code (`NotFoundException`, ...).
    pub code: &'static str,
    /// The HTTP status.
    pub status: StatusCode,
    /// What is wrong, naming the field when a field is.
    pub message: String,
}

impl ApiError {
    fn new(code: &'static str, status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            status,
            message: message.into(),
        }
    }

    /// `BadRequestException` (400): the request is malformed or a value is out of range.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new("BadRequestException", StatusCode::BAD_REQUEST, message)
    }

    /// `NotFoundException` (404).
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new("NotFoundException", StatusCode::NOT_FOUND, message)
    }

    /// `ConflictException` (409): a resource of that name exists.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new("ConflictException", StatusCode::CONFLICT, message)
    }

    /// `ResourceInUseException` (409): other resources depend on it.
    pub fn in_use(message: impl Into<String>) -> ApiError {
        ApiError::new("ResourceInUseException", StatusCode::CONFLICT, message)
    }

    /// `LimitExceededException` (400): a limit of the control plane or its store.
    pub fn limit_exceeded(message: impl Into<String>) -> ApiError {
        ApiError::new("LimitExceededException", StatusCode::BAD_REQUEST, message)
    }

    /// `TooManyTagsException` (400): a resource would have more than 50 tags.
    pub fn too_many_tags(message: impl Into<String>) -> ApiError {
        ApiError::new("TooManyTagsException", StatusCode::BAD_REQUEST, message)
    }

    /// A 403 of the caller's authentication (`UnrecognizedClientException`,
    /// `InvalidSignatureException`, `MissingAuthenticationTokenException`).
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(code, StatusCode::FORBIDDEN, message)
    }

    /// `InternalServerErrorException` (500): the store failed.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(
            "InternalServerErrorException",
            StatusCode::INTERNAL_SERVER_ERROR,
            message,
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}
