//! The gateway (edge): serves seed 000's call path `/{prefix}/{app}/{version}/call/{func}`.
//!
//! Route lookup is one hash-map read in memory ([`RouteTable`]), kept fresh by the control
//! plane whenever a release becomes active or an app is deleted. A call goes straight to a
//! ready instance of the function's resource with no database access on the way.
//! The gateway owns no state of its own and makes no decisions about what runs.
//!
//! Apps with an `http` resource are reached through the edge ([`EdgeTable`], `edge.rs`), a
//! reverse proxy to their ready instances. Precedence on the shared listener, first match
//! wins: (1) `Host: {app}.{domain}` when a domain is configured: the whole request goes to
//! that app's service; (2) Morel's own fixed routes (`/api/…`, `/functions…`, `/executions/…`,
//! the dashboard at `/`, `/{prefix}/{app}/{version}/run/{fn}`) and the call path
//! `/{prefix}/{app}/{version}/call|await/{fn}` when `{prefix}/{app}` is a deployed function
//! app; (3) a manifest route `METHOD /{app}{path}` (a literal path first, then paths with
//! parameters such as `/items/{item_id}`, most specific first: [`HttpRoutes`]); (4) anything
//! else under `/{app}/` goes to the app's http service; (5) JSON 404.
//!
//! A call's arguments (its body, and an app route's path and query parameters) are bound and
//! checked against the function's parameters here (`args.rs`), before any worker sees them.

mod args;
mod call;
mod conn;
mod edge;
mod lane;
mod query;
mod routes;
mod upstream;

pub use args::{BindError, Binding, CallArgs, UrlArgs, bind_args};
pub use call::{
    CallFailure, CallInput, CallLimits, CallOutput, ErrorBody, GatewayApi, call_function,
    call_function_with, host_routing, router,
};
pub use conn::{ConnLimits, conn_limits, limit_body_pauses};
pub use edge::{EdgeTable, NO_INSTANCE_WAIT, is_hop_by_hop};
pub use lane::{Lane, LaneEnd, is_control_path};
pub use query::{BadUrl, decode_segment, parse_query};
pub use routes::{
    AppRoutes, FnRoute, HttpRoutes, PRODUCTION, RouteMatch, RouteTable, check_version,
    environment_host,
};

// For the fuzz targets in `morel-fuzz`: the parsers of hostile input, callable without a
// socket or a running instance.
pub use args::{MAX_DEPTH, check_depth, check_json};
pub use lane::{HeadForFuzzing, forwarded_head_for_fuzzing};
pub use upstream::{chunked_body_len_for_fuzzing, parse_answer_head_for_fuzzing};
