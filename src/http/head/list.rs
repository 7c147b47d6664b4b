//! The header positions of one head, in a list whose storage is reused.
//!
//! Every request head and every response head needs such a list; allocating a fresh one
//! for each was two of the three heap allocations a keep-alive request made
//! (`tests/alloc.rs`). A worker is one thread and a head lives and dies on the thread that
//! parsed it, so a list dropped there goes back to that thread's spares and the next head
//! parsed there takes it: a pop and a push, no allocation, no lock, nothing shared between
//! workers. Threads that are not workers (tests, the config checker) use it the same way.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

use super::HeaderPos;

/// Spare lists a thread keeps: more heads than this alive at once on one thread (requests
/// in flight with their responses) allocate, and their lists are freed afterwards.
const SPARE_LISTS: usize = 256;
/// A list that grew beyond this many headers is not kept (an unusual head: 40 bytes per
/// header, so a spare stays within 1.3 KiB).
const KEEP_UP_TO: usize = 32;

thread_local! {
    static SPARE: RefCell<Vec<Vec<HeaderPos>>> = const { RefCell::new(Vec::new()) };
}

/// A head's headers in the order sent; derefs to a `Vec<HeaderPos>`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HeaderList(Vec<HeaderPos>);

impl HeaderList {
    /// An empty list with room for `n` headers, on a spare's storage when the thread has one.
    pub fn with_capacity(n: usize) -> HeaderList {
        let mut list = SPARE
            .try_with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop()))
            .ok()
            .flatten()
            .unwrap_or_default();
        list.reserve(n);
        HeaderList(list)
    }
}

impl Drop for HeaderList {
    fn drop(&mut self) {
        let mut list = std::mem::take(&mut self.0);
        if list.capacity() == 0 || list.capacity() > KEEP_UP_TO {
            return;
        }
        list.clear();
        // At thread exit the spares may already be gone: the list is then simply freed.
        let _ = SPARE.try_with(|s| {
            if let Ok(mut s) = s.try_borrow_mut()
                && s.len() < SPARE_LISTS
            {
                s.push(list);
            }
        });
    }
}

impl Clone for HeaderList {
    fn clone(&self) -> HeaderList {
        let mut list = HeaderList::with_capacity(self.0.len());
        list.0.extend_from_slice(&self.0);
        list
    }
}

impl Deref for HeaderList {
    type Target = Vec<HeaderPos>;
    fn deref(&self) -> &Vec<HeaderPos> {
        &self.0
    }
}

impl DerefMut for HeaderList {
    fn deref_mut(&mut self) -> &mut Vec<HeaderPos> {
        &mut self.0
    }
}

impl<'a> IntoIterator for &'a HeaderList {
    type Item = &'a HeaderPos;
    type IntoIter = std::slice::Iter<'a, HeaderPos>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(i: usize) -> HeaderPos {
        HeaderPos {
            name: i..i + 1,
            value: i + 2..i + 3,
            hop: false,
        }
    }

    fn spares() -> usize {
        SPARE.with(|s| s.borrow().len())
    }

    #[test]
    fn a_dropped_list_is_reused_empty_by_the_next_head() {
        let mut a = HeaderList::with_capacity(4);
        a.push(header(1));
        a.push(header(2));
        let storage = a.as_ptr();
        drop(a);
        let b = HeaderList::with_capacity(2);
        assert!(b.is_empty(), "a reused list starts empty");
        assert_eq!(b.as_ptr(), storage, "the storage was reused, not allocated");
    }

    #[test]
    fn a_list_that_grew_past_the_keep_limit_is_freed() {
        drop(HeaderList::with_capacity(1));
        let kept = spares();
        assert!(kept >= 1);
        let mut big = HeaderList::with_capacity(KEEP_UP_TO + 8);
        big.push(header(0));
        drop(big);
        assert_eq!(
            spares(),
            kept - 1,
            "the spare it grew from is not kept either"
        );
        let mut small = HeaderList::with_capacity(KEEP_UP_TO);
        small.push(header(0));
        drop(small);
        assert_eq!(spares(), kept, "a list within the limit is kept");
    }

    #[test]
    fn a_clone_has_the_same_headers_and_storage_of_its_own() {
        let mut a = HeaderList::with_capacity(2);
        a.push(header(3));
        let b = a.clone();
        assert_eq!(*a, *b);
        assert_ne!(a.as_ptr(), b.as_ptr());
    }

    #[test]
    fn spares_are_bounded() {
        let lists: Vec<HeaderList> = (0..SPARE_LISTS + 10)
            .map(|_| HeaderList::with_capacity(1))
            .collect();
        drop(lists);
        assert_eq!(spares(), SPARE_LISTS);
    }
}
