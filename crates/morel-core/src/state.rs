//! State enums shared by the store, the agent and the API, each stored and sent as the string
//! its declaration gives (lowercase, except seed 001's upper-case function and execution
//! statuses).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $s)] $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
            /// The variant stored as `s`, if any.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($s => Ok($name::$variant),)+
                    other => Err(format!(
                        concat!("unknown ", stringify!($name), " {:?} (expected one of: {})"),
                        other,
                        [$($s),+].join(", ")
                    )),
                }
            }
        }
    };
}

string_enum!(
    /// What runs a resource's functions.
    Runtime { Python => "python", Node => "node", Wasm => "wasm", Http => "http" }
);

string_enum!(
    /// Seed 004's instance state machine: `idle → launching → ready → draining → stopped`,
    /// plus `failed` (crash loop, failed install, failed load).
    InstanceState {
        Idle => "idle",
        Launching => "launching",
        Ready => "ready",
        Draining => "draining",
        Stopped => "stopped",
        Failed => "failed",
    }
);

string_enum!(
    /// A release's progress through a deploy.
    ReleaseStatus {
        Pending => "pending",
        Installing => "installing",
        Starting => "starting",
        Ready => "ready",
        Failed => "failed",
        Superseded => "superseded",
    }
);

string_enum!(
    /// A node's membership: `ready` while its agent heartbeats, `lost` once it missed them for
    /// the TTL (its instances are then placed elsewhere); a heartbeat makes it `ready` again.
    NodeState { Ready => "ready", Lost => "lost" }
);

string_enum!(
    /// An instance placed on a node by the scheduler (many machines): `placed` until its agent
    /// reports it `ready` (serving at its endpoint) or `failed`.
    PlacementState { Placed => "placed", Ready => "ready", Failed => "failed" }
);

string_enum!(
    /// Seed 002's per-resource reconcile state.
    ResourceStatus { Deployed => "deployed", Updated => "updated", Failed => "failed" }
);

string_enum!(
    /// A compiled (wasm) function's lifecycle (seed 001).
    WasmFunctionStatus {
        Pending => "PENDING",
        Compiling => "COMPILING",
        Ready => "READY",
        Failed => "FAILED",
    }
);

string_enum!(
    /// A recorded invocation's progress: compiled functions' executions and async jobs.
    ExecutionStatus {
        Queued => "QUEUED",
        Running => "RUNNING",
        Completed => "COMPLETED",
        Failed => "FAILED",
        TimedOut => "TIMED_OUT",
        Cancelled => "CANCELLED",
    }
);

string_enum!(
    /// `production` tracks the app's main branch; a `preview` tracks any other branch.
    EnvironmentKind { Production => "production", Preview => "preview" }
);

string_enum!(
    /// Written by the deploy worker as it walks an environment's deploy.
    EnvironmentStatus {
        Creating => "creating",
        Deploying => "deploying",
        Ready => "ready",
        Failed => "failed",
    }
);

string_enum!(
    /// A git deploy request's progress.
    DeployStatus {
        Queued => "queued",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
    }
);

impl WasmFunctionStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Ready | Self::Failed)
    }
}

impl DeployStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

impl ReleaseStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ReleaseStatus::Ready | ReleaseStatus::Failed | ReleaseStatus::Superseded
        )
    }
}
