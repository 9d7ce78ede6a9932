//! CreateKeysAndCertificate: a device certificate from the local CA.
//!
//! AWS issues an unbound certificate and binds it to a thing later (AttachThingPrincipal).
//! Here a device's identity is its certificate's CN, checked by the broker, so the thing
//! is named when the certificate is issued: the query parameter `thingName` (a local
//! extension) is required. `iotjobs-local create-thing NAME --out DIR` wraps this.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{flag, Q};
use super::ControlContext;
use crate::local::service::task::Command;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertQuery {
    set_as_active: Option<String>,
    thing_name: Option<String>,
}

pub async fn create_keys_and_certificate(
    State(ctx): State<ControlContext>,
    Q(q): Q<CertQuery>,
) -> ApiResult<Json<Value>> {
    flag(q.set_as_active.as_deref())?;
    let pki = ctx
        .pki
        .clone()
        .ok_or_else(|| ApiError::invalid("this service has no certificate authority"))?;
    let thing = q.thing_name.ok_or_else(|| {
        ApiError::invalid(
            "iotjobs-local binds a certificate to its thing when issuing it: add the query \
             parameter thingName=NAME (or use `iotjobs-local create-thing NAME --out DIR`)",
        )
    })?;
    // The thing must exist, as it must before AttachThingPrincipal on AWS.
    let name = thing.clone();
    ctx.service
        .request(|r| Command::DescribeThing(name, r))
        .await?;
    let issued = tokio::task::spawn_blocking(move || pki.issue_device_cert(&thing))
        .await
        .map_err(|e| ApiError::internal(format!("certificate task failed: {e}")))?
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(Json(json!({
        "certificateArn": issued.certificate_arn,
        "certificateId": issued.certificate_id,
        "certificatePem": issued.certificate_pem,
        "keyPair": {
            "PublicKey": issued.key_pair.public_key,
            "PrivateKey": issued.key_pair.private_key,
        },
    })))
}
