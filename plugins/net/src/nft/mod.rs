//! nftables transactions (being written).
