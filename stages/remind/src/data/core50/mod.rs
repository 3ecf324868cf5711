//! CORe50 (Lomonaco & Maltoni, CoRL 2017): the release layout
//! `s{1..11}/o{1..50}/C_{ss}_{oo}_{fff}.png`, 10 categories of 5 objects each, 11 sessions.
//!
//! - [`layout`]: reading the release layout (`remind-import-images --core50`).
//! - [`generate`]: mini-CORe50, a generated data set in that layout (`remind-generate-core50`).

pub mod generate;
pub mod layout;
