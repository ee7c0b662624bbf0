//! What the KV users of the cluster (leases, fences, SLA clocks) share: the bucket names
//! derived from `cluster.stream`, creating a bucket idempotently (whichever instance
//! starts first creates it, the others open it), and turning any text (a conversation or
//! worker id) into a valid KV key.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};

/// Partition leases, one key `p<N>` per partition (history 1).
pub fn leases_bucket(stream: &str) -> String {
    format!("{stream}_leases")
}

/// Worker heartbeats, one key per worker id: how many workers share the partitions.
pub fn workers_bucket(stream: &str) -> String {
    format!("{stream}_workers")
}

/// Write fences and versions, one key per conversation id.
pub fn conversations_bucket(stream: &str) -> String {
    format!("{stream}_conversations")
}

/// Open SLA clocks, one key per conversation id.
pub fn sla_bucket(stream: &str) -> String {
    format!("{stream}_sla")
}

/// A KV operation that failed for a reason other than a revision check.
#[derive(Debug, thiserror::Error)]
#[error("NATS KV {operation} on bucket {bucket} failed: {source}")]
pub struct KvError {
    pub operation: &'static str,
    pub bucket: String,
    #[source]
    pub source: async_nats::Error,
}

impl KvError {
    pub fn new(
        operation: &'static str,
        bucket: &str,
        source: impl Into<async_nats::Error>,
    ) -> KvError {
        KvError {
            operation,
            bucket: bucket.to_owned(),
            source: source.into(),
        }
    }

    /// The operation did not answer within its budget.
    pub fn timed_out(operation: &'static str, bucket: &str, budget: Duration) -> KvError {
        KvError::new(
            operation,
            bucket,
            format!("no answer within {} ms", budget.as_millis()),
        )
    }
}

/// How a bucket is made when it does not exist yet.
#[derive(Debug, Clone)]
pub struct BucketSpec {
    pub name: String,
    /// Values kept per key; 1 for every cluster bucket (only the newest value matters, and
    /// the revision checks compare against it).
    pub history: i64,
    pub replicas: u8,
    /// Entries older than this vanish (zero: never). Heartbeats of dead workers use it.
    pub max_age: Duration,
}

impl BucketSpec {
    /// A bucket whose entries never expire (leases, fences, SLA books): one value per
    /// key, `replicas` copies.
    pub fn lasting(name: String, replicas: u8) -> BucketSpec {
        BucketSpec {
            name,
            history: 1,
            replicas,
            max_age: Duration::ZERO,
        }
    }
}

/// The configured partition count, or an error naming the bucket being opened.
pub fn configured_partitions(
    config: &convoy::config::ClusterConfig,
    bucket: &str,
) -> Result<convoy::cluster::Partitions, KvError> {
    convoy::cluster::Partitions::new(config.partitions)
        .map_err(|error| KvError::new("open", bucket, error.to_string()))
}

/// Opens the bucket, or creates it when absent. Two instances starting at once may both
/// try to create it: the loser of that race opens the winner's.
///
/// The bucket's stream is created here with the configuration a KV bucket has (what
/// `create_key_value` would send), because async-nats 0.51's `create_key_value` first
/// asks the account info, whose answer from nats-server 2.9 it cannot parse.
pub async fn ensure_bucket(
    jetstream: &jetstream::Context,
    spec: &BucketSpec,
) -> Result<kv::Store, KvError> {
    if let Ok(store) = jetstream.get_key_value(spec.name.as_str()).await {
        return Ok(store);
    }
    let config = stream::Config {
        name: format!("KV_{}", spec.name),
        subjects: vec![format!("$KV.{}.>", spec.name)],
        max_messages_per_subject: spec.history.max(1),
        max_age: spec.max_age,
        storage: stream::StorageType::File,
        num_replicas: usize::from(spec.replicas.max(1)),
        allow_rollup: true,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    };
    jetstream
        .get_or_create_stream(config)
        .await
        .map_err(|error| KvError::new("create bucket", &spec.name, error))?;
    jetstream
        .get_key_value(spec.name.as_str())
        .await
        .map_err(|error| KvError::new("open bucket", &spec.name, error))
}

/// A KV key for any text: ASCII letters, digits and `-` stay, every other byte becomes
/// `_` and two uppercase hex digits. Injective (an `_` always starts an escape), so two
/// conversation ids never share a key; empty text becomes a lone `_`, which no non-empty
/// text produces.
pub fn encode_key(text: &str) -> String {
    if text.is_empty() {
        return "_".to_owned();
    }
    let mut key = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' {
            key.push(char::from(byte));
        } else {
            key.push_str(&format!("_{byte:02X}"));
        }
    }
    key
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_uuids_as_they_are_and_escape_everything_else() {
        let uuid = "3f1c2a9e-7b8d-4c1e-9a2f-0d6b5e4c3a21";
        assert_eq!(encode_key(uuid), uuid);
        assert_eq!(encode_key("a.b c_d"), "a_2Eb_20c_5Fd");
        assert_eq!(encode_key("é"), "_C3_A9");
        assert_eq!(encode_key(""), "_");
    }

    #[test]
    fn distinct_texts_get_distinct_keys() {
        let texts = ["a_2E", "a.", "a_", "_", "", "a_5F2E"];
        let keys: std::collections::BTreeSet<String> =
            texts.iter().map(|text| encode_key(text)).collect();
        assert_eq!(keys.len(), texts.len());
    }

    #[test]
    fn bucket_names_derive_from_the_stream() {
        assert_eq!(leases_bucket("CONVOY_FRAMES"), "CONVOY_FRAMES_leases");
        assert_eq!(workers_bucket("S"), "S_workers");
        assert_eq!(conversations_bucket("S"), "S_conversations");
        assert_eq!(sla_bucket("S"), "S_sla");
    }
}
