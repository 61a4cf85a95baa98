"""killtask: DBbrain kill tasks from Slack, with a second person's approval."""
