//! Morel's shared vocabulary: typed ids, names, digests, state enums and the documented
//! environment variables. Every other crate speaks these types instead of bare strings.
//!
//! This crate deliberately holds no I/O, no storage and no HTTP types: it is the dependency
//! everything else can afford.

pub mod digest;
pub mod env_vars;
pub mod ids;
pub mod names;
pub mod state;
pub mod time;

pub use digest::{Digest, DigestError};
pub use ids::{DeployId, ExecutionId, InstanceId, NodeId, ReleaseId};
pub use names::{AppName, FunctionName, NameError, Namespace, ResourceName};
pub use state::{
    DeployStatus, EnvironmentKind, EnvironmentStatus, ExecutionStatus, InstanceState, NodeState,
    PlacementState, ReleaseStatus, ResourceStatus, Runtime, WasmFunctionStatus,
};
