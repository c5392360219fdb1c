//! The fake token-agent's GetToken service: issues tokens, applies the fault
//! mode, and writes the TSKV access log and the app log.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status};

use super::logfile::{AppLog, LogFile};
use super::{code_name, fmt_time, token, tskv, Mode};
use crate::proto::token_agent_server::TokenAgent;
use crate::proto::{GetTokenRequest, GetTokenResponse, GET_TOKEN_METHOD};

/// Token issuing settings.
#[derive(Clone, Debug)]
pub struct TokenPolicy {
    /// `expires_at = issue time + lifetime`.
    pub lifetime: Duration,
    /// Delay before answering in [`Mode::Slow`].
    pub slow_delay: Duration,
    /// Hand out the same token (same `expires_at`) for this long after
    /// issuing it; zero issues a new token on every call.
    pub reuse_for: Duration,
}

struct Issued {
    token: String,
    at: SystemTime,
    expires_at: SystemTime,
}

/// The GetToken service. Shared (`Arc`) across listener restarts.
pub struct Agent {
    policy: TokenPolicy,
    mode: Mutex<Mode>,
    cache: Mutex<Option<Issued>>,
    access: LogFile,
    app: Arc<AppLog>,
}

impl Agent {
    pub fn new(policy: TokenPolicy, mode: Mode, access: LogFile, app: Arc<AppLog>) -> Self {
        Agent {
            policy,
            mode: Mutex::new(mode),
            cache: Mutex::new(None),
            access,
            app,
        }
    }

    pub fn mode(&self) -> Mode {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
    }

    fn issue(&self) -> GetTokenResponse {
        let now = SystemTime::now();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = cache
            .as_ref()
            .is_some_and(|c| now.duration_since(c.at).unwrap_or_default() < self.policy.reuse_for);
        if !fresh {
            *cache = Some(Issued {
                token: token::new_token(),
                at: now,
                expires_at: now + self.policy.lifetime,
            });
        }
        let c = cache.as_ref().expect("just filled");
        GetTokenResponse {
            iam_token: c.token.clone(),
            expires_at: Some(c.expires_at.into()),
        }
    }

    async fn answer(&self) -> Result<GetTokenResponse, Status> {
        match self.mode() {
            Mode::Unavailable => Err(Status::unavailable("IAM service is unavailable")),
            Mode::Slow => {
                tokio::time::sleep(self.policy.slow_delay).await;
                Ok(self.issue())
            }
            // Down/Refused never get here: nothing listens.
            Mode::Ok | Mode::Down | Mode::Refused => Ok(self.issue()),
        }
    }
}

fn peer(req: &Request<GetTokenRequest>) -> (String, String) {
    let cred = req
        .extensions()
        .get::<UdsConnectInfo>()
        .and_then(|i| i.peer_cred);
    let pid = cred
        .and_then(|c| c.pid())
        .map_or("-".into(), |p| p.to_string());
    let uid = cred.map_or("-".into(), |c| c.uid().to_string());
    (pid, uid)
}

#[tonic::async_trait]
impl TokenAgent for Agent {
    async fn get_token(
        &self,
        req: Request<GetTokenRequest>,
    ) -> Result<Response<GetTokenResponse>, Status> {
        let start = Instant::now();
        let (pid, uid) = peer(&req);
        let request_id = token::request_id();
        let result = self.answer().await;
        let status = match &result {
            Ok(_) => "OK",
            Err(s) => code_name(s.code()),
        };
        if let Err(s) = &result {
            self.app.error(&format!(
                "GetToken failed: request_id={request_id} pid={pid} uid={uid} status={status}: {}",
                s.message()
            ));
        }
        let duration = format!("{:.3}ms", start.elapsed().as_secs_f64() * 1000.0);
        self.access.line(&tskv::format_line(&[
            ("time", &fmt_time(SystemTime::now())),
            ("pid", &pid),
            ("uid", &uid),
            ("method", GET_TOKEN_METHOD),
            ("status", status),
            ("duration", &duration),
            ("request_id", &request_id),
        ]));
        result.map(Response::new)
    }
}
