"""The hocba command line: runs the stack locally, the demo, and operator commands."""
