//! Pages: sealing from an open page's rows, the record's round trip, and its refusals.

use super::edge::Edge;
use super::page::{Page, Span, FANOUT, PAGE_RECORD_LEN};
use super::tree::mem_root;
use super::{hash_leaf_data, Hash};

fn children(seed: u64) -> Vec<Hash> {
    (0..FANOUT as u64).map(|i| hash_leaf_data(&(seed * 1000 + i).to_le_bytes())).collect()
}

fn span(i: u64) -> Span {
    Span {
        first_offset: i * 100,
        last_offset: i * 100,
        end_offset: i * 100 + 40,
        first_write_ms: 1000 + i,
        last_write_ms: 1000 + i,
    }
}

/// Pages sealed by the edge as children arrive, at every level they reach.
fn sealed_by_edge(leaves: u64) -> Vec<Page> {
    let mut edge = Edge::default();
    let mut pages = Vec::new();
    for i in 0..leaves {
        let leaf = hash_leaf_data(&i.to_le_bytes());
        edge.push(0, 42, leaf, span(i), &mut |page| pages.push(page.clone()));
    }
    pages
}

#[test]
fn a_page_sealed_from_rows_equals_one_sealed_from_its_children() {
    let pages = sealed_by_edge(3 * FANOUT as u64);
    assert_eq!(pages.len(), 3);
    for page in &pages {
        let again = Page::seal(0, page.index, 42, page.span, page.prev_hash, page.children.clone());
        assert_eq!(*page, again);
        assert_eq!(page.root, mem_root(&page.children, FANOUT as u64));
        // Every inner node a page answers for is the root of the leaves under it.
        for height in 0..=8u32 {
            let width = 1usize << height;
            for child in (0..FANOUT).step_by(width) {
                let expected = mem_root(&page.children[child..child + width], width as u64);
                assert_eq!(page.node(height, child), expected, "height {height} child {child}");
            }
        }
    }
    // Each page links to the one before it.
    assert_eq!(pages[0].prev_hash, Hash([0; 32]));
    assert_eq!(pages[1].prev_hash, pages[0].hash());
    assert_eq!(pages[2].prev_hash, pages[1].hash());
    // The spans cover exactly their entries.
    assert_eq!(pages[1].span.first_offset, 256 * 100);
    assert_eq!(pages[1].span.last_offset, 511 * 100);
    assert_eq!(pages[1].span.end_offset, 511 * 100 + 40);
    assert_eq!((pages[1].span.first_write_ms, pages[1].span.last_write_ms), (1256, 1511));
}

#[test]
fn a_level_one_page_seals_over_256_level_zero_pages() {
    let pages = sealed_by_edge(FANOUT as u64 * FANOUT as u64);
    let (level0, level1): (Vec<_>, Vec<_>) = pages.iter().partition(|p| p.level == 0);
    assert_eq!((level0.len(), level1.len()), (FANOUT, 1));
    let roots: Vec<Hash> = level0.iter().map(|p| p.root).collect();
    assert_eq!(level1[0].children, roots);
    assert_eq!(level1[0].span.first_offset, 0);
    assert_eq!(level1[0].span.end_offset, level0[FANOUT - 1].span.end_offset);
}

#[test]
fn a_page_record_round_trips_and_every_flipped_bit_is_refused() {
    let page = Page::seal(1, 3, 0xfeed, span(7), hash_leaf_data(b"prev"), children(3));
    let bytes = page.encode();
    assert_eq!(bytes.len(), PAGE_RECORD_LEN);
    assert_eq!(Page::decode(&bytes, 1, 3, 0xfeed).unwrap(), page);
    let header = Page::decode_header(&bytes, 1, 3, 0xfeed).unwrap();
    assert_eq!(
        (header.root, header.span, header.prev_hash),
        (page.root, page.span, page.prev_hash)
    );
    // Every bit of the record is checked.
    for bit in 0..bytes.len() * 8 {
        let mut bad = bytes.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(Page::decode(&bad, 1, 3, 0xfeed).is_err(), "bit {bit} flipped went unnoticed");
    }
    // A record is refused where it does not belong: another level, place or log.
    assert!(Page::decode(&bytes, 0, 3, 0xfeed).unwrap_err().0.contains("level"));
    assert!(Page::decode(&bytes, 1, 4, 0xfeed).unwrap_err().0.contains("page 3"));
    assert!(Page::decode(&bytes, 1, 3, 0xbeef).unwrap_err().0.contains("belongs to log"));
    assert!(Page::decode(&bytes[..100], 1, 3, 0xfeed).is_err());
    assert!(Page::decode_header(&bytes[..100], 1, 3, 0xfeed).is_err());
    assert!(Page::decode(&[], 1, 3, 0xfeed).is_err());
}
