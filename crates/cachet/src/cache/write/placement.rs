//! Where a response goes in the store, and how it is written there: the entry, the
//! variant index, and a marker after it when an invalidation came meanwhile.

use super::*;

/// Where a response goes in the store.
pub(crate) struct Placement<St> {
    store: St,
    key: CacheKey,
    /// The index to write under the URI's key when the response varies.
    index: Option<Index>,
    ttl: Duration,
    /// Where the request's key stood among the cache's invalidations when it was sent.
    sent: Option<Sent>,
    invalidations: Invalidations,
    clock: Arc<dyn Clock>,
}

/// A variant index to write, as the request saw it.
struct Index {
    key: CacheKey,
    variants: Variants,
    /// For a request that saw no index: what is stored before this instant is hidden,
    /// should the store hold no index when it is written either.
    unseen: Option<SystemTime>,
}

impl<St: Store> Placement<St> {
    /// A response that varies on `names` goes under its variant's key (from `view`, the
    /// request's headers as [`Keys::vary_view`](crate::Keys) shows them), with the index
    /// under the URI's key; writers that saw the same index write the same one back.
    ///
    /// A request that saw no index, where the store still holds none when the index is
    /// written, writes one that hides what was stored before it began: variants may
    /// outlive their index, and the index (or the invalidation marker that replaced it)
    /// may have been evicted, expired or deleted for an invalidation the store refused,
    /// so older variants of the URI may be there that an invalidation hid. A variant
    /// another cache stored just before, whose index was not yet written, is hidden as
    /// well: a miss, never a response from before an invalidation. The request's own
    /// variant, received after it began, counts. (A request that saw no index because
    /// its lookup failed takes the index the store holds, and hides nothing more.)
    pub(crate) fn new(
        facts: &RequestFacts<St>,
        view: &HeaderMap,
        names: Vec<HeaderName>,
        ttl: Duration,
        config: &Config,
    ) -> Self {
        if names.is_empty() {
            return Self {
                store: facts.store.cloned(),
                key: facts.key.clone(),
                index: None,
                ttl,
                sent: facts.sent,
                invalidations: config.invalidations.clone(),
                clock: config.clock.clone(),
            };
        }
        // An index hides what was stored until its instant inclusive, and times are kept
        // to the millisecond: a millisecond before the request began.
        let unseen = facts.seen.is_none().then(|| {
            facts
                .time
                .checked_sub(Duration::from_millis(1))
                .unwrap_or(UNIX_EPOCH)
        });
        let not_before = facts
            .seen
            .as_ref()
            .map_or(UNIX_EPOCH, |seen| seen.not_before);
        Self {
            store: facts.store.cloned(),
            key: facts.key.variant(&names, view),
            index: Some(Index {
                key: facts.key.clone(),
                variants: Variants { names, not_before },
                unseen,
            }),
            ttl,
            sent: facts.sent,
            invalidations: config.invalidations.clone(),
            clock: config.clock.clone(),
        }
    }

    /// Writes the entry, with `body` as its body (the entry's own is not read), and the
    /// index; returns the entry's value, `None` if it could not be encoded.
    pub(crate) fn put(self, entry: &Entry, body: &[Bytes], metrics: &Metrics) -> Option<Value> {
        let writing = self.invalidations.writing(self.uri_key());
        // Invalidated while it was fetched: it may be from before the change (the origin
        // may have answered it first), so it is not stored, nor handed to the requests
        // waiting for it, which ask the origin instead (RFC 9111 §4.4: the marker hides
        // what was stored before it, not what is written after).
        if self.invalidations.since(self.sent) {
            tracing::debug!(key = %self.key, "invalidated while it was fetched; not storing");
            return None;
        }
        let value = self.encode(entry, body)?;
        let (invalidations, sent) = (self.invalidations.clone(), self.sent);
        self.write(value.clone(), writing, metrics);
        // Invalidated while it was written (the marker then goes again, after it): not
        // handed to the waiters either. A store that answers at once has written both.
        (!invalidations.since(sent)).then_some(value)
    }

    /// As [`put`](Self::put), for a revalidation's update of the response received at
    /// `received` and stored under `stored`: written only if the store still holds that
    /// response there when it is read again (one store round trip), since another
    /// request may have stored a newer one meanwhile, or an invalidation hidden it, and
    /// the update would put the old one back (RFC 9111 §4.3.4 updates what is stored).
    /// Returns whether it is to be written.
    pub(crate) fn update(
        self,
        entry: &Entry,
        (stored, received): (CacheKey, SystemTime),
        metrics: &Metrics,
    ) -> bool {
        let writing = self.invalidations.writing(self.uri_key());
        if self.invalidations.since(self.sent) {
            tracing::debug!(key = %self.key, "invalidated while it was revalidated; not storing");
            return false;
        }
        let Some(value) = self.encode(entry, std::slice::from_ref(&entry.body)) else {
            return false;
        };
        let metrics = metrics.clone();
        detach_all(async move {
            let current = latest(self.store.clone().oneshot(StoreRequest::Get(stored))).await;
            // An invalidation while the store was read: its marker may be there now.
            if self.invalidations.since(self.sent) {
                return tracing::debug!(key = %self.key, "invalidated while it was revalidated; not storing");
            }
            let unchanged = matches!(
                &current,
                Ok(StoreResponse::Found(stored)) if matches!(
                    Record::decode(stored.bytes()),
                    Ok(Record::Response(stored)) if stored.response_time == received
                )
            );
            if unchanged {
                self.write(value, writing, &metrics);
            } else {
                tracing::debug!(key = %self.key, "replaced while it was revalidated; not storing");
            }
        });
        true
    }

    fn encode(&self, entry: &Entry, body: &[Bytes]) -> Option<Value> {
        match entry.encode_with_body(body) {
            Ok(bytes) => Some(Value::from(bytes)),
            Err(error) => {
                tracing::warn!(key = %self.key, %error, "entry could not be encoded; not storing");
                None
            }
        }
    }

    /// Writes the entry, then its index; then, if an invalidation of the key was counted
    /// since the request was sent (after the check before the write), a marker of its
    /// own under the URI's key: the invalidation's marker may have been written first,
    /// and the entry or index over it, so one goes again after them (RFC 9111 §4.4). Each
    /// waits for the one before, so that a store whose writes overtake one another (a
    /// pool of connections) writes them in order.
    /// The key of the URI's responses: the index's when the response varies.
    fn uri_key(&self) -> &CacheKey {
        self.index.as_ref().map_or(&self.key, |index| &index.key)
    }

    fn write(self, value: Value, writing: Writing, metrics: &Metrics) {
        let Self {
            mut store,
            key,
            index,
            ttl,
            sent,
            invalidations,
            clock,
        } = self;
        let metrics = metrics.clone();
        detach_all(async move {
            // In the group of writes an invalidation waits for, to the end.
            let _writing = writing;
            let put = StoreRequest::Put {
                key: key.clone(),
                value,
                ttl,
            };
            // The variant goes first, as a plain entry does; under its own key it is found
            // only through an index that names it, whose time also decides whether it
            // counts.
            if let Err(error) = store.clone().oneshot(put).await {
                write_failed(&error, &metrics);
            }
            let uri_key = match index {
                Some(index) => {
                    let uri_key = index.key.clone();
                    write_index(store.clone(), index, ttl.max(MIN_INDEX_TTL), &metrics).await;
                    uri_key
                }
                None => key,
            };
            if invalidations.since(sent) {
                mark_again(&mut store, uri_key, clock.now(), &invalidations, &metrics);
            }
        });
    }
}

/// Invalidates `key` again after a write that an invalidation of the key, counted
/// meanwhile, may have had its marker written under (RFC 9111 §4.4): a marker of its own,
/// hiding what was stored before `now` (the written entry included), counted and written
/// as any invalidation's is, with the same fallbacks should the store refuse it.
pub(super) fn mark_again<St: Store>(
    store: &mut St,
    key: CacheKey,
    now: SystemTime,
    invalidations: &Invalidations,
    metrics: &Metrics,
) {
    tracing::debug!(%key, "invalidated while it was written; marking it again");
    let marker = Variants {
        names: Vec::new(),
        not_before: now,
    };
    let Ok(bytes) = marker.encode() else {
        return tracing::warn!(%key, "invalidation marker could not be encoded");
    };
    let noted = invalidations.note(&key);
    mark(store, key, &Value::from(bytes), noted, metrics);
}

/// Writes a variant index. It goes back as the request saw it when it looked the URI up,
/// unless an invalidation marker or a newer index was written while its response was
/// fetched: that one's time then holds, so that variants from before it stay hidden
/// instead of coming back with the index written over it. It costs one store read for
/// each variant stored, past any memory tier (see [`latest`]), whose copy may be older than
/// another process's marker; a marker written between that read and the write is still
/// lost.
async fn write_index<St: Store>(store: St, index: Index, ttl: Duration, metrics: &Metrics) {
    let Index {
        key,
        variants: mut index,
        unseen,
    } = index;
    let current = match latest(store.clone().oneshot(StoreRequest::Get(key.clone()))).await {
        Ok(StoreResponse::Found(value)) => match Record::decode(value.bytes()) {
            Ok(Record::Variants(current)) => Some(current.not_before),
            _ => None,
        },
        Ok(_) => None,
        // The write is likely to fail the same way, and says so.
        Err(error) => {
            tracing::debug!(%key, %error, "variant index could not be read again");
            None
        }
    };
    index.not_before = match (current, unseen) {
        (Some(current), _) => index.not_before.max(current),
        (None, Some(unseen)) => index.not_before.max(unseen),
        (None, None) => index.not_before,
    };
    let value = match index.encode() {
        Ok(bytes) => Value::from(bytes),
        Err(error) => {
            return tracing::warn!(%error, "variant index could not be encoded; not storing");
        }
    };
    let put = StoreRequest::Put { key, value, ttl };
    if let Err(error) = store.oneshot(put).await {
        write_failed(&error, metrics);
    }
}
