"""The style networks and their artifacts: what training imports to build and export a network. Imports only core."""
