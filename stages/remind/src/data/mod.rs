//! Pipeline step 1, the imports: everything that turns a data set on disk into the tables
//! the later stages join on.
//!
//! - [`clevr`]: the mini-CLEVR generator (`remind-generate-clevr`), also in TDIUC's layout.
//! - [`core50`]: CORe50's release layout: the mini-CORe50 generator and the import.
//! - [`questions`]: question import for VQA (`remind-import-questions`): tokens,
//!   vocabulary, answer and question-type tables.
//! - [`gensen`]: gensen sentence features per question (`remind-import-gensen`).
//! - [`images`]: image-classification import (`remind-import-images`): IDX files or image
//!   folders, the class order and the label table (with its reader, [`images::labels`]).

pub mod clevr;
pub mod core50;
pub mod gensen;
pub mod images;
pub mod questions;
