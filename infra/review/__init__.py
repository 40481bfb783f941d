"""`kiln review`: the report a platform team reads before approving a stack change."""
