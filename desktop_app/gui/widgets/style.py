"""The app's look: Fusion plus a light stylesheet, so it looks the same on every platform."""

STYLESHEET = """
QWidget { font-size: 10.5pt; }
#sidebar { background: #1f2430; color: #d8dee9; border: none; font-size: 11pt; }
#sidebar::item { padding: 10px 14px; }
#sidebar::item:selected { background: #3b4252; color: white; border-left: 3px solid #88c0d0; }
#pane { background: white; border: 1px solid #d0d4dc; border-radius: 6px; }
#paneTitle { font-weight: bold; color: #3b4252; }
#paneFooter { color: #6b7280; font-size: 9pt; }
QTextBrowser { border: none; background: white; }
#banner { background: #fff4ce; border: 1px solid #e6c44f; border-radius: 4px; padding: 6px; }
#emptyState { color: #6b7280; font-size: 13pt; }
#statusLine { color: #374151; padding: 4px 2px; }
#noteLabel { color: #2563eb; }
#genStatus { color: #4b5563; }
QPushButton#judge_left, QPushButton#judge_right { font-weight: bold; }
QPushButton#judge_left:enabled, QPushButton#judge_right:enabled {
    background: #e8f0fe; border: 1px solid #8ab4f8; border-radius: 4px; }
QPushButton#judge_left:hover, QPushButton#judge_right:hover { background: #d2e3fc; }
"""
