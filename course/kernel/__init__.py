"""The guest side: guest kernels, module builds, the disposable VM and what runs inside it."""
