"""One module per subcommand; each exports a click command named `command`."""
