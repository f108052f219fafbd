"""Write path: validate and normalise input into episode drafts."""
