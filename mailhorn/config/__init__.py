"""Configuration: main.cf and master.cf with Postfix's syntax and meaning, and the parameter registry."""
