//! ferrymesh's control plane: App Mesh's resource model (API version 2019-01-25, App
//! Mesh's field names) with its validation ([`model`]), one store trait with an
//! embedded durable implementation ([`store`]), and App Mesh's REST API ([`api`]) that
//! the AWS CLI and SDKs drive unchanged.

pub mod api;
pub mod error;
pub mod export;
pub mod import;
pub mod manifest;
pub mod model;
pub mod store;
pub mod translate;

pub use error::ApiError;
