"""A lab of machines measured over SSH: its inventory, the run on every host, and the throwaway sshd of its tests."""
