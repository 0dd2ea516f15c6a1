//! `milvus-like delete` and `milvus-like flush`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use milvus_like_api::proto;
use tokio_util::sync::CancellationToken;

use super::args::ProxyArgs;
use super::collection::not_found_hint;
use super::connect::Proxy;
use super::error::{CliError, ExitCode};

/// Keys per delete request.
const KEYS_PER_REQUEST: usize = 100_000;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("keys_from").required(true).multiple(true).args(["keys", "keys_file"])))]
pub struct DeleteArgs {
    /// The collection to delete from.
    #[arg(long, short = 'c')]
    pub collection: String,
    /// Primary keys to delete, comma separated.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    pub keys: Vec<i64>,
    /// A file of primary keys: separated by commas, spaces or new lines; `#` starts a comment.
    #[arg(long)]
    pub keys_file: Option<PathBuf>,
    #[command(flatten)]
    pub proxy: ProxyArgs,
}

pub async fn delete(args: DeleteArgs) -> Result<(), CliError> {
    let mut keys = args.keys.clone();
    if let Some(path) = &args.keys_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::bad_input(format!("cannot read {}: {e}", path.display())))?;
        keys.extend(parse_keys(&text, &path.display().to_string())?);
    }
    if keys.is_empty() {
        return Err(CliError::bad_input(
            "no primary keys to delete; give --keys 1,2,3 or a --keys-file with keys in it",
        ));
    }
    let proxy = Proxy::connect(&args.proxy, Duration::from_secs(60)).await?;
    let mut deleted = 0u64;
    for chunk in keys.chunks(KEYS_PER_REQUEST) {
        let request = proto::DeleteRequest {
            collection: args.collection.clone(),
            partition: String::new(),
            primary_keys: chunk.to_vec(),
            string_keys: Vec::new(),
        };
        let resp = proxy
            .call(
                &format!("delete from {:?}", args.collection),
                |mut c| async move { c.delete(request).await },
            )
            .await
            .map_err(|e| {
                let e = not_found_hint(e, &args.collection);
                if deleted > 0 {
                    e.with_note(format!("the first {deleted} keys were deleted"))
                } else {
                    e
                }
            })?;
        deleted += resp.deleted;
    }
    println!(
        "deleted {deleted} primary keys from {:?} (keys that were never inserted are no-ops; \
         exports leave the rows out once the deletes are flushed)",
        args.collection
    );
    Ok(())
}

/// Keys separated by commas or white space; `#` comments to the end of the line.
pub fn parse_keys(text: &str, file: &str) -> Result<Vec<i64>, CliError> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        for word in line
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty())
        {
            keys.push(word.parse().map_err(|_| {
                CliError::bad_input(format!(
                    "line {} of {file}: {word:?} is not a primary key (a whole number)",
                    i + 1
                ))
            })?);
        }
    }
    Ok(keys)
}

#[derive(Debug, Args)]
pub struct FlushArgs {
    /// The collection to flush.
    #[arg(long, short = 'c')]
    pub collection: String,
    /// Seal the growing segments and return at once; the data nodes flush them
    /// in the background.
    #[arg(long)]
    pub no_wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    #[command(flatten)]
    pub proxy: ProxyArgs,
}

/// Seals the collection's growing segments and waits until they are flushed. The
/// data coordinator gives up waiting after a while but the flush goes on, so a
/// `DeadlineExceeded` answer is asked again until `--timeout-secs`.
pub async fn flush(args: FlushArgs, cancel: CancellationToken) -> Result<(), CliError> {
    let proxy = Proxy::connect(&args.proxy, Duration::from_secs(150)).await?;
    let started = Instant::now();
    let give_up = started + Duration::from_secs(args.timeout_secs);
    let doing = format!("flush {:?}", args.collection);
    loop {
        let request = proto::ProxyFlushRequest {
            collection: args.collection.clone(),
            wait: !args.no_wait,
        };
        let call = proxy.raw(|mut c| async move { c.flush(request).await });
        let outcome = tokio::select! {
            r = call => r,
            () = tokio::time::sleep_until(give_up.into()) => Err(tonic::Status::deadline_exceeded(
                "the --timeout-secs deadline passed",
            )),
            () = cancel.cancelled() => {
                return Err(CliError::new(
                    ExitCode::Interrupted,
                    format!("interrupted; the flush of {:?} goes on in the background", args.collection),
                ));
            }
        };
        match outcome {
            Ok(resp) => {
                let ids = &resp.flushed_segment_ids;
                if args.no_wait {
                    println!(
                        "sealed the growing segments of {:?}; the data nodes flush them in the \
                         background",
                        args.collection
                    );
                } else {
                    let list: Vec<String> = ids.iter().map(ToString::to_string).collect();
                    println!(
                        "flushed {:?} in {:.1} s: {} segments{}",
                        args.collection,
                        started.elapsed().as_secs_f64(),
                        ids.len(),
                        if list.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", list.join(", "))
                        }
                    );
                }
                return Ok(());
            }
            Err(status) if status.code() == tonic::Code::DeadlineExceeded => {
                if Instant::now() >= give_up {
                    return Err(proxy.service.failed(&doing, &status).with_note(format!(
                        "still not flushed after {} s (--timeout-secs); the flush goes on",
                        args.timeout_secs
                    )));
                }
                eprintln!(
                    "{doing}: still flushing after {:.0} s",
                    started.elapsed().as_secs_f64()
                );
            }
            Err(status) => {
                return Err(not_found_hint(
                    proxy.service.failed(&doing, &status),
                    &args.collection,
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_parse_or_name_the_bad_line() {
        assert_eq!(
            parse_keys("1,2 3\n# comment\n-4 # trailing\n\n", "k.txt").expect("valid"),
            vec![1, 2, 3, -4]
        );
        let e = parse_keys("1\n2\nabc\n", "k.txt").expect_err("junk");
        assert_eq!(e.code, ExitCode::BadInput);
        assert_eq!(
            e.message,
            "line 3 of k.txt: \"abc\" is not a primary key (a whole number)"
        );
    }
}
