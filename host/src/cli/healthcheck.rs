//! `dms healthcheck [URL]`: exit 0 when the endpoint answers 2xx, 1 otherwise, with the reason
//! on stderr. Used by docker-compose's health checks, so it needs no curl in the image.

use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The health endpoint.
    #[arg(default_value = "http://127.0.0.1:3000/health")]
    url: String,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
}

pub(super) async fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(args.timeout))
        .build()?;
    match client.get(&args.url).send().await {
        Ok(response) if response.status().is_success() => {
            println!("healthy: {} answered {}", args.url, response.status());
            Ok(ExitCode::SUCCESS)
        }
        Ok(response) => {
            eprintln!("unhealthy: {} answered {}", args.url, response.status());
            Ok(ExitCode::FAILURE)
        }
        Err(error) => {
            let reason = if error.is_timeout() {
                format!("no answer within {} s", args.timeout)
            } else if error.is_connect() {
                "connection refused or unreachable (is the server running?)".to_owned()
            } else {
                error.to_string()
            };
            eprintln!("unhealthy: {}: {reason}", args.url);
            Ok(ExitCode::FAILURE)
        }
    }
}
