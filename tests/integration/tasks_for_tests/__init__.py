"""Task modules that integration tests register in engines of their own and of child processes."""
