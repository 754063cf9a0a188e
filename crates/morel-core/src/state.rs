//! State enums shared by the store, the agent and the API. Stored and sent as lowercase strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
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

impl ReleaseStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ReleaseStatus::Ready | ReleaseStatus::Failed | ReleaseStatus::Superseded
        )
    }
}
