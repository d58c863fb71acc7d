"""`newsletter archive`: a static web archive of sent issues, and the pictures they show.

- ``images``: pictures next to an issue, published under content-hashed names, so that the
  email and the site point at the same URL and a changed picture gets a new one.
- ``site``: the web version of each issue (rendered for nobody), the index, ``latest/`` and
  the Atom feed.
"""
