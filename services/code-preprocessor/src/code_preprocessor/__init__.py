"""code-preprocessor: structure-aware parsing and chunking of code and documents."""
