//! Hand-written access to the cache table: where it is (`table`), and the heap and index paths
//! that stand in for the kept statements where they can do all the statement would (`heap`).

pub mod caches;
pub mod heap;
pub mod table;

pub use caches::table;
pub use heap::*;
pub use table::{
    extension_owner, has_pending_expiry_function, qualified_table_name, relation_exists,
    try_qualified_table_name, QUALIFIED_PENDING_EXPIRY,
};
