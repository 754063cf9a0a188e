//! The app manifest (DESIGN §4, seed 002's format plus Morel's fields) and `morel build`'s
//! discovery: turning a project directory into a validated [`Manifest`].
//!
//! Discovery never runs user code: Python files are read with Python's own `ast` module and
//! Node files with a static scanner, both shipped inside the binary (`scripts/`). This crate
//! does not pack, sign or deploy anything; `morel-bundle` and the control plane do that.

mod build;
mod discover;
mod error;
mod model;
mod pyenv;
mod route;
mod toml_config;

pub use build::{BuildOptions, build_manifest, parse_metacall_json_for_fuzzing, wasm_language};
pub use error::ManifestError;
pub use model::{
    DEFAULT_HEARTBEAT_TTL_S, DependencyKind, DependencySpec, FunctionSpec, HttpSpec, MANIFEST_FILE,
    MANIFEST_VERSION, MIN_HEARTBEAT_TTL_S, Manifest, ResourceSpec, ResourceType,
};
pub use route::{BadRoutePath, RoutePath, Segment, parse_route_key};

/// Parses the text of a `morel.toml` (the project file) with the parser `build_manifest`
/// reads it with. Public for the fuzz targets in `morel-fuzz`.
pub fn parse_morel_toml_for_fuzzing(
    text: &str,
) -> Result<toml_config::ProjectConfig, ManifestError> {
    toml_config::parse(text)
}
