// Small progressive enhancements for the staff pages; every page works without this file.
"use strict";
