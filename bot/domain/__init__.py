"""The community's rules, written once: chat, JSON API and pages all call these."""
