"""The Slack layer: routes (every command, button and view), handlers, the Block Kit builders
and the renderer of every other text. Importing the builders loads neither Bolt nor SQLAlchemy."""
