"use strict";(()=>{try{let e=localStorage.getItem("shellgate-theme");(e==="light"||e==="dark")&&(document.documentElement.dataset.theme=e)}catch{}})();
