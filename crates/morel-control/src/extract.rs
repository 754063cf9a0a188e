//! A JSON body extractor whose rejections are [`ApiError`]s, so a malformed body gets the
//! same `{"error", "type"}` answer as every other bad request.

use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::ApiError;

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(ApiError::new(
                rejection.status(),
                "BadRequest",
                format!("invalid request body: {}", rejection.body_text()),
            )),
        }
    }
}
