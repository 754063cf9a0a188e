//! The gateway (edge): serves seed 000's call path `/{prefix}/{app}/{version}/call/{func}`.
//!
//! Route lookup is one hash-map read in memory ([`RouteTable`]), kept fresh by the control
//! plane whenever a release becomes active or an app is deleted. A call goes straight to a
//! ready instance of the function's resource with no database access on the way.
//! The gateway owns no state of its own and makes no decisions about what runs.

mod args;
mod call;
mod routes;

pub use args::{CallArgs, bind_args};
pub use call::{CallFailure, CallLimits, ErrorBody, GatewayApi, call_function, router};
pub use routes::{AppRoutes, FnRoute, RouteTable};
