"""The defaults every config starts from, inside the package so that a config file anywhere on disk
(or an installed binary run from any directory) can import them: ``from tfdiffgan.configs import
default``. The repository's ``configs/*.py`` are the files to copy and edit.
"""
