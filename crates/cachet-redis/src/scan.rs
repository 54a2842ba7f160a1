//! Listing and clearing a [`RedisStore`](crate::RedisStore): `SCAN` under the namespace,
//! on one server or master by master on a cluster.

use std::time::Duration;

use bytes::Bytes;
use cachet::store::{Cursor, InvalidCursor, Listed, Page, Scan, Unsupported};
use cachet::{BoxError, CacheKey};
use deadpool_redis::redis::{self, Value};

use crate::error::{Error, Op};
use crate::key;
use crate::store::Inner;

/// Reads keys' values and remaining TTLs (`PTTL` milliseconds), in order, until what it
/// has read would pass `ARGV[2]` bytes (the first key is read whatever its size), and
/// returns a value and a TTL for each key it read: the caller sends the keys after the
/// last one read again. A key that is gone or holds something other than a string reads
/// as `false`, and a value of more than `ARGV[1]` bytes (the store's `max_value_bytes`)
/// as its length and its first bytes (where a hashed key's frame names its cache key):
/// as many as the limit and one, up to 64 KiB, never more than a lookup would read.
const FETCH_SCRIPT: &str = r"
local max = tonumber(ARGV[1])
local budget = tonumber(ARGV[2])
local head = math.min(max + 1, 65536)
local out = {}
local read = 0
for _, key in ipairs(KEYS) do
  local len = redis.pcall('STRLEN', key)
  if type(len) ~= 'number' then len = 0 end
  local cost = len
  if len > max then cost = head end
  if #out > 0 and read + cost > budget then break end
  read = read + cost
  if len == 0 then out[#out + 1] = false
  elseif len > max then out[#out + 1] = {len, redis.call('GETRANGE', key, 0, head - 1)}
  else out[#out + 1] = redis.call('GET', key) end
  out[#out + 1] = redis.call('PTTL', key)
end
return out
";

/// What [`FETCH_SCRIPT`] answers for a listing that wants sizes only
/// ([`Scan::sizes_only`]): each key's length, with, for a hashed key, its first bytes
/// (whose frame names its cache key), then its TTL in milliseconds. No value is read.
const SIZES_SCRIPT: &str = r"
local head = math.min(tonumber(ARGV[1]) + 1, 65536)
local out = {}
for _, key in ipairs(KEYS) do
  local len = redis.pcall('STRLEN', key)
  if type(len) ~= 'number' then len = 0 end
  if len == 0 then out[#out + 1] = false
  elseif string.find(key, ' #sha256:', 1, true) then
    out[#out + 1] = {len, redis.call('GETRANGE', key, 0, head - 1)}
  else out[#out + 1] = {len} end
  out[#out + 1] = redis.call('PTTL', key)
end
return out
";

/// About how many bytes of values one [`FETCH_SCRIPT`] reads. Redis runs a script to its
/// end before it serves any other client, and holds its whole reply meanwhile, so a page
/// of large values is read a megabyte or so at a time (or one value at a time, each no
/// larger than a lookup may read), never all at once.
const FETCH_BYTES: usize = 1 << 20;

/// The most keys one [`FETCH_SCRIPT`] is sent: those it does not reach are sent again,
/// so a page of large values resends a hundred keys a script, not the whole page's.
const FETCH_KEYS: usize = 100;

/// Why a value listed for a walk that wants sizes only is not there.
const NOT_READ: &str = "not read: the listing asked for sizes only";

/// How many keys a clear deletes per `SCAN` and `UNLINK`.
const CLEAR_BATCH: usize = 1_000;

impl Inner {
    /// One page of the entries under the namespace (and the scan's prefix): a `SCAN`,
    /// then the page's values and TTLs, read by scripts of about [`FETCH_BYTES`] each (by
    /// one per key on a cluster, whose keys live in different slots).
    ///
    /// On a cluster the listing walks the masters one after the other, in address order;
    /// its cursor is the master's index, `-`, and that master's `SCAN` cursor.
    pub(crate) async fn scan(&self, scan: &Scan) -> Result<Page, BoxError> {
        let pattern = self.pattern(scan.get_prefix());
        let masters = self.masters().await?;
        // Redis answers a cursor it did not make with an error of its own; a cursor that
        // is not one of ours is refused first, as the caller's mistake.
        let invalid = || InvalidCursor::new(scan.cursor(), "a redis store");
        let number = |cursor: &str| cursor.parse::<u64>().is_ok();
        let (index, cursor) = if scan.cursor().is_start() {
            (0, "0")
        } else if masters.is_empty() {
            let cursor = scan.cursor().as_str();
            if !number(cursor) {
                return Err(invalid().into());
            }
            (0, cursor)
        } else {
            scan.cursor()
                .as_str()
                .split_once('-')
                .filter(|(_, cursor)| number(cursor))
                .and_then(|(index, cursor)| Some((index.parse::<usize>().ok()?, cursor)))
                .ok_or_else(invalid)?
        };
        let node = masters.get(index);
        // Past the last master: the cluster has fewer masters than when the listing
        // began, and the listing is over.
        if !masters.is_empty() && node.is_none() {
            return Ok(Page::new(Vec::new(), None));
        }
        let node = node.map(|(host, port)| (host.as_str(), *port));
        let (next, keys) = self
            .scan_keys(Op::Scan, node, cursor, &pattern, scan.get_limit())
            .await?;

        let script = if scan.is_sizes_only() {
            SIZES_SCRIPT
        } else {
            FETCH_SCRIPT
        };
        let values = self
            .fetch(script, &keys, !masters.is_empty(), &pattern)
            .await?;
        let mut items = Vec::with_capacity(keys.len());
        let mut values = values.into_iter();
        let size = |len: &i64| u64::try_from(*len).unwrap_or_default();
        for redis_key in &keys {
            let (value, ttl) = (values.next(), values.next());
            let listed = match value {
                Some(Value::BulkString(bytes)) => self.listed(redis_key, bytes),
                // Not read: too large, or only its size was asked for.
                Some(Value::Array(unread)) => match &unread[..] {
                    [Value::Int(len), Value::BulkString(start)] => {
                        let key = match self.owner(redis_key, Bytes::from(start.clone())) {
                            Ok((key, _)) | Err(key) => key,
                        };
                        if scan.is_sizes_only() {
                            Listed::failed(key, NOT_READ, size(len))
                        } else {
                            let error = Error::too_large(Op::Scan, self.max_value_bytes);
                            Listed::failed(key, error, size(len))
                        }
                    }
                    [Value::Int(len)] if scan.is_sizes_only() => {
                        let key = CacheKey::from_text(self.key_text(redis_key));
                        Listed::failed(key, NOT_READ, size(len))
                    }
                    _ => return Err(self.unexpected(Op::Scan, &pattern).into()),
                },
                // Gone since the `SCAN`, or not a string (not a cache entry).
                _ => continue,
            };
            let ttl = match ttl {
                Some(Value::Int(millis)) => u64::try_from(millis).ok().map(Duration::from_millis),
                _ => None,
            };
            let listed = listed.ttl(ttl);
            if scan.matches(listed.key().as_str()) {
                items.push(listed);
            }
        }

        let next = if masters.is_empty() {
            (next != "0").then(|| Cursor::new(next))
        } else if next != "0" {
            Some(Cursor::new(format!("{index}-{next}")))
        } else {
            (index + 1 < masters.len()).then(|| Cursor::new(format!("{}-0", index + 1)))
        };
        Ok(Page::new(items, next))
    }

    /// The values and TTLs of `keys`, two replies a key, as [`FETCH_SCRIPT`] reads them: a
    /// script at a time, each sent the keys the one before did not reach (on a cluster,
    /// `one_at_a_time`, a key a script).
    async fn fetch(
        &self,
        script: &str,
        keys: &[Vec<u8>],
        one_at_a_time: bool,
        pattern: &str,
    ) -> Result<Vec<Value>, Error> {
        let batch = if one_at_a_time { 1 } else { FETCH_KEYS };
        let mut values = Vec::with_capacity(2 * keys.len());
        let mut rest = keys;
        while !rest.is_empty() {
            let sent = &rest[..batch.min(rest.len())];
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(script)
                .arg(sent.len())
                .arg(sent)
                .arg(self.max_value_bytes)
                .arg(FETCH_BYTES);
            let Value::Array(read) = self.execute(Op::Scan, None, &cmd, pattern).await? else {
                return Err(self.unexpected(Op::Scan, pattern));
            };
            // Every key read has its value and TTL, and at least the first is read.
            let count = read.len() / 2;
            if read.len() % 2 != 0 || !(1..=sent.len()).contains(&count) {
                return Err(self.unexpected(Op::Scan, pattern));
            }
            values.extend(read);
            rest = &rest[count..];
        }
        Ok(values)
    }

    /// Deletes every key under the namespace, a batch at a time (on a cluster, master by
    /// master, a key at a time, as keys of one batch live in different slots).
    pub(crate) async fn clear(&self) -> Result<(), BoxError> {
        if self.namespace.is_empty() {
            // Everything in the database would match.
            let what = "clear its entries";
            return Err(Unsupported::new("redis store without a namespace", what).into());
        }
        let pattern = self.pattern(None);
        let masters = self.masters().await?;
        let nodes: Vec<Option<(&str, u16)>> = if masters.is_empty() {
            vec![None]
        } else {
            masters
                .iter()
                .map(|(h, p)| Some((h.as_str(), *p)))
                .collect()
        };
        for node in nodes {
            let mut cursor = String::from("0");
            loop {
                let (next, keys) = self
                    .scan_keys(Op::Clear, node, &cursor, &pattern, CLEAR_BATCH)
                    .await?;
                let batches: Vec<&[Vec<u8>]> = if node.is_none() {
                    vec![&keys[..]]
                } else {
                    keys.chunks(1).collect()
                };
                for batch in batches.into_iter().filter(|b| !b.is_empty()) {
                    let mut cmd = redis::cmd("UNLINK");
                    cmd.arg(batch);
                    let Value::Int(_) = self.execute(Op::Clear, None, &cmd, &pattern).await? else {
                        return Err(self.unexpected(Op::Clear, &pattern).into());
                    };
                }
                if next == "0" {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    }

    /// The addresses of a cluster's masters, in order (`CLUSTER NODES`); none on a single
    /// server.
    async fn masters(&self) -> Result<Vec<(String, u16)>, Error> {
        if !self.backend.is_cluster() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("NODES");
        let text = match self.execute(Op::Scan, None, &cmd, "").await? {
            Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Value::VerbatimString { text, .. } => text,
            _ => return Err(self.unexpected(Op::Scan, "")),
        };
        let mut masters: Vec<(String, u16)> = text.lines().filter_map(master).collect();
        masters.sort();
        masters.dedup();
        if masters.is_empty() {
            return Err(self.unexpected(Op::Scan, ""));
        }
        Ok(masters)
    }

    /// `SCAN cursor MATCH pattern COUNT count`, on a cluster's master `node`: the next
    /// cursor and the keys.
    async fn scan_keys(
        &self,
        op: Op,
        node: Option<(&str, u16)>,
        cursor: &str,
        pattern: &str,
        count: usize,
    ) -> Result<(String, Vec<Vec<u8>>), Error> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        let reply = self.execute(op, node, &cmd, pattern).await?;
        let Value::Array(mut parts) = reply else {
            return Err(self.unexpected(op, pattern));
        };
        let (Some(Value::Array(keys)), Some(Value::BulkString(next)), None) =
            (parts.pop(), parts.pop(), parts.pop())
        else {
            return Err(self.unexpected(op, pattern));
        };
        let next = String::from_utf8(next).map_err(|_| self.unexpected(op, pattern))?;
        let keys = keys
            .into_iter()
            .map(|key| match key {
                Value::BulkString(key) => Ok(key),
                _ => Err(self.unexpected(op, pattern)),
            })
            .collect::<Result<_, _>>()?;
        Ok((next, keys))
    }

    /// The `MATCH` pattern of the keys under the namespace whose cache keys may start
    /// with `prefix`: a hashed key keeps only the first bytes of its text readable, so
    /// the pattern holds no more than those, and the listing checks the whole key.
    fn pattern(&self, prefix: Option<&str>) -> String {
        let prefix = prefix.unwrap_or_default();
        let mut cut = key::HASHED_PREFIX_BYTES.min(prefix.len());
        while !prefix.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut pattern = String::with_capacity(self.namespace.len() + cut + 8);
        for c in self.namespace.chars().chain(prefix[..cut].chars()) {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        pattern
    }

    /// A listed entry from its Redis key and stored bytes: the cache key is the Redis
    /// key without the namespace, or for a hashed key the one framed in the value.
    fn listed(&self, redis_key: &[u8], bytes: Vec<u8>) -> Listed {
        let size = bytes.len() as u64;
        match self.owner(redis_key, Bytes::from(bytes)) {
            Ok((key, value)) => Listed::new(key, value.into(), size),
            Err(key) => Listed::failed(key, "its value names another cache key", size),
        }
    }

    /// The cache key a value read under `redis_key` is stored for, and the value itself:
    /// for a hashed Redis key, the key its frame names, if that key hashes to
    /// `redis_key`. Else (a frame someone else wrote, or cut off) the Redis key's own
    /// text, as the error: listed under another entry's key, it would be shown twice, and
    /// deleting it by that key would delete the other.
    fn owner(&self, redis_key: &[u8], bytes: Bytes) -> Result<(CacheKey, Bytes), CacheKey> {
        let text = self.key_text(redis_key);
        if !text.contains(key::HASH_MARKER) {
            return Ok((CacheKey::from_text(text), bytes));
        }
        match key::unframe(&bytes) {
            Some((framed, value))
                if key::redis_key(&self.namespace, framed).as_bytes() == redis_key =>
            {
                Ok((CacheKey::from_text(framed), value))
            }
            _ => Err(CacheKey::from_text(text)),
        }
    }

    /// A Redis key's text after the namespace (a hashed key's readable prefix and hash).
    fn key_text(&self, redis_key: &[u8]) -> String {
        let rest = redis_key
            .strip_prefix(self.namespace.as_bytes())
            .unwrap_or(redis_key);
        String::from_utf8_lossy(rest).into_owned()
    }
}

/// The address of a master in a line of `CLUSTER NODES`
/// (`<id> <host:port@cport[,hostname]> <flags> …`), unless it is failing.
fn master(line: &str) -> Option<(String, u16)> {
    let mut fields = line.split_whitespace();
    let (_, address, flags) = (fields.next()?, fields.next()?, fields.next()?);
    let flags: Vec<&str> = flags.split(',').collect();
    if !flags.contains(&"master") || flags.iter().any(|f| f.starts_with("fail")) {
        return None;
    }
    let address = address.split(['@', ',']).next()?;
    let (host, port) = address.rsplit_once(':')?;
    let port = port.parse().ok().filter(|p| *p != 0)?;
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masters_are_read_from_cluster_nodes_lines() {
        let line = "07c3 127.0.0.1:30004@40004,node-4 myself,master - 0 0 1 connected 0-5460";
        assert_eq!(master(line), Some(("127.0.0.1".to_owned(), 30004)));
        assert_eq!(
            master("e7d1 127.0.0.1:30005@40005 slave 07c3 0 0 1 connected"),
            None
        );
        assert_eq!(
            master("e7d1 127.0.0.1:30006@40006 master,fail - 0 0 1 connected"),
            None
        );
        assert_eq!(master("e7d1 :0@0 master,noaddr - 0 0 1 connected"), None);
        assert_eq!(master(""), None);
    }
}
