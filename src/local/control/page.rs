//! Pagination as AWS does it: `maxResults` (1..250) in, an opaque `nextToken` out, omitted
//! on the last page. Tokens here are the offset of the next item; lists are small and the
//! service orders them deterministically, so an offset is stable enough between pages.

use super::error::ApiError;

pub const MAX_RESULTS: usize = 250;

/// The page of `items` that `next_token` and `max_results` select, and the next token.
pub fn page<T>(
    items: Vec<T>,
    max_results: Option<usize>,
    next_token: Option<&str>,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let max = match max_results {
        None => MAX_RESULTS,
        Some(n @ 1..=MAX_RESULTS) => n,
        Some(n) => {
            return Err(ApiError::invalid(format!(
                "maxResults {n} is out of range (1..{MAX_RESULTS})"
            )))
        }
    };
    let start = match next_token.filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => t
            .strip_prefix("o")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= items.len())
            .ok_or_else(|| ApiError::invalid(format!("invalid nextToken {t:?}")))?,
    };
    let end = start.saturating_add(max).min(items.len());
    let next = (end < items.len()).then(|| format!("o{end}"));
    let page = items.into_iter().skip(start).take(end - start).collect();
    Ok((page, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_all_pages_and_rejects_bad_input() {
        let items: Vec<u32> = (0..5).collect();
        let (p1, t1) = page(items.clone(), Some(2), None).unwrap();
        assert_eq!(p1, [0, 1]);
        let (p2, t2) = page(items.clone(), Some(2), t1.as_deref()).unwrap();
        assert_eq!(p2, [2, 3]);
        let (p3, t3) = page(items.clone(), Some(2), t2.as_deref()).unwrap();
        assert_eq!((p3, t3), (vec![4], None));
        assert_eq!(
            page(items.clone(), None, None).unwrap(),
            (items.clone(), None)
        );
        assert!(page(items.clone(), Some(0), None).is_err());
        assert!(page(items.clone(), Some(251), None).is_err());
        assert!(page(items.clone(), None, Some("o9")).is_err());
        assert!(page(items, None, Some("junk")).is_err());
    }
}
