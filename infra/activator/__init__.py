"""The scale-from-zero activator (a Lambda behind the endpoint's listener rule); see handler.py."""
