"""`benchctl report`: results trees -> rliable aggregates, paper-style tables and figures."""
