"""sync: delivers archived record versions to the ministry exactly once in effect and keeps its receipts."""
