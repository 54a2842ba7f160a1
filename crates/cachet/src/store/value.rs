use std::any::Any;
use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

/// A stored value: its bytes, and a slot for what a reader makes of them.
///
/// Values are cheap to clone (clones share the bytes and the slot). A store that keeps
/// values in the process ([`MemoryStore`](super::MemoryStore)) hands back the same value
/// on every get, so a layer that verifies it or a cache that decodes it does that work
/// once, with [`derive`](Self::derive), not on every hit. A store that goes over the
/// network makes a new value from the bytes it receives, so those are always checked
/// afresh.
///
/// ```
/// use cachet::store::Value;
///
/// let value = Value::from(bytes::Bytes::from_static(b"42"));
/// let parsed = value.derive(|bytes| std::str::from_utf8(bytes)?.parse::<u32>().map_err(Into::into));
/// let parsed: std::sync::Arc<u32> = parsed.map_err(|e: Box<dyn std::error::Error>| e.to_string())?;
/// assert_eq!(*parsed, 42);
/// # Ok::<_, String>(())
/// ```
#[derive(Clone)]
pub struct Value {
    inner: Arc<Inner>,
}

struct Inner {
    bytes: Bytes,
    derived: OnceLock<Arc<dyn Any + Send + Sync>>,
}

impl Value {
    /// A value holding `bytes`.
    pub fn new(bytes: Bytes) -> Self {
        Self {
            inner: Arc::new(Inner {
                bytes,
                derived: OnceLock::new(),
            }),
        }
    }

    /// The value's bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.inner.bytes
    }

    /// What `derive` makes of the bytes, computed once per value and kept with it.
    ///
    /// A failure is not kept (the next call tries again); neither is a result when the
    /// slot already holds something of another type (it is computed each time then).
    pub fn derive<T, E>(&self, derive: impl FnOnce(&Bytes) -> Result<T, E>) -> Result<Arc<T>, E>
    where
        T: Any + Send + Sync,
    {
        if let Some(derived) = self.inner.derived.get() {
            if let Ok(derived) = Arc::clone(derived).downcast::<T>() {
                return Ok(derived);
            }
            return derive(&self.inner.bytes).map(Arc::new);
        }
        let derived = Arc::new(derive(&self.inner.bytes)?);
        // Another thread may have filled the slot meanwhile; either result is the same.
        let _ = self.inner.derived.set(derived.clone());
        Ok(derived)
    }

    /// [`derive`](Self::derive), borrowing what the slot keeps instead of counting
    /// another reference to it (a hit from memory takes no `Arc` for it).
    pub(crate) fn derive_ref<T, E>(
        &self,
        derive: impl FnOnce(&Bytes) -> Result<T, E>,
    ) -> Result<Derived<'_, T>, E>
    where
        T: Any + Send + Sync,
    {
        if let Some(derived) = self.inner.derived.get() {
            return match kept(derived) {
                Some(derived) => Ok(Derived::Kept(derived)),
                None => derive(&self.inner.bytes).map(|d| Derived::Alone(Arc::new(d))),
            };
        }
        let fresh = Arc::new(derive(&self.inner.bytes)?);
        // Another thread may have filled the slot meanwhile; either result is the same.
        let _ = self.inner.derived.set(fresh.clone());
        Ok(match self.inner.derived.get().and_then(kept) {
            Some(kept) => Derived::Kept(kept),
            None => Derived::Alone(fresh),
        })
    }
}

/// The slot's content as a `T`, if that is what it holds.
fn kept<T: Any>(derived: &Arc<dyn Any + Send + Sync>) -> Option<&T> {
    (**derived).downcast_ref::<T>()
}

/// What [`Value::derive_ref`] made of a value's bytes.
pub(crate) enum Derived<'a, T> {
    /// Kept in the value's slot.
    Kept(&'a T),
    /// Made for this call alone: the slot holds something else.
    Alone(Arc<T>),
}

impl<T> std::ops::Deref for Derived<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        match self {
            Self::Kept(derived) => derived,
            Self::Alone(derived) => derived,
        }
    }
}

impl From<Bytes> for Value {
    fn from(bytes: Bytes) -> Self {
        Self::new(bytes)
    }
}

impl From<&'static [u8]> for Value {
    fn from(bytes: &'static [u8]) -> Self {
        Self::new(Bytes::from_static(bytes))
    }
}

impl From<&'static str> for Value {
    fn from(text: &'static str) -> Self {
        Self::new(Bytes::from_static(text.as_bytes()))
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for Value {}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("len", &self.inner.bytes.len())
            .field("derived", &self.inner.derived.get().is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn derive_runs_once_per_value_and_clones_share_it() {
        let runs = AtomicUsize::new(0);
        let value = Value::from(&b"7"[..]);
        let clone = value.clone();
        let parse = |bytes: &Bytes| {
            runs.fetch_add(1, Ordering::Relaxed);
            Ok::<_, ()>(bytes.len())
        };
        assert_eq!(*value.derive(parse).expect("parses"), 1);
        assert_eq!(*clone.derive(parse).expect("parses"), 1);
        assert_eq!(runs.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn derive_ref_borrows_what_the_slot_keeps_and_makes_other_types_alone() {
        let value = Value::from(&b"7"[..]);
        let first = value.derive_ref(|b| Ok::<_, ()>(b.len())).expect("derives");
        assert!(matches!(first, Derived::Kept(&1)));
        let again = value
            .derive_ref(|_| Err::<usize, _>("not run: the slot keeps it"))
            .expect("kept");
        assert!(matches!(again, Derived::Kept(&1)));
        assert_eq!(*value.derive::<usize, ()>(|_| Ok(2)).expect("kept"), 1);
        let other = value.derive_ref(|_| Ok::<_, ()>("other")).expect("derives");
        assert!(matches!(other, Derived::Alone(_)));
        assert_eq!(*other, "other");
    }

    #[test]
    fn failures_are_not_kept_and_other_types_are_computed_afresh() {
        let value = Value::from(&b"x"[..]);
        assert!(value.derive(|_| Err::<u8, _>("bad")).is_err());
        assert_eq!(*value.derive(|_| Ok::<_, ()>(1u8)).expect("ok"), 1);
        assert_eq!(
            *value.derive(|_| Ok::<_, ()>("other")).expect("ok"),
            "other"
        );
        assert_eq!(
            *value.derive(|_| Ok::<_, ()>(2u8)).expect("ok"),
            1,
            "the first kept type stays"
        );
    }
}
