"""Read path: analyse the query, gather candidates, fuse, aggregate, pack."""
