//! The head's and the blocks' label index is dataflows' [`Postings`] (shared with the
//! latest-sample table behind `/federate`); see `dataflows::postings` for its contract.

pub use dataflows::postings::Postings;

#[cfg(test)]
pub(crate) mod tests {
    pub(crate) use dataflows::postings::testing::{random_labels, random_selector};
}
