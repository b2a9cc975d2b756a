//! Hand-written access to the cache table: where it is (`table`), and the heap and index paths
//! that stand in for the kept statements where they can do all the statement would (`heap`).

pub mod heap;
pub mod table;

pub use heap::*;
pub use table::{
    has_pending_expiry_function, lookup_table, qualified_table_name, relation_exists, table,
    QUALIFIED_PENDING_EXPIRY,
};
