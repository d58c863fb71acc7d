"""Write an email newsletter in Markdown, preview it, and send it through SendGrid."""

__version__ = "0.1.0"
