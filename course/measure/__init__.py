"""Measuring on this machine: the lessons found on disk, building and running their programs, reading their output."""
