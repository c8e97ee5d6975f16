// A page written against next-auth/react as the upstream's pages are, bundled by the browser
// test with esbuild and served on the origin of a running `regcopilot serve`.
// window.nextAuth: the client's functions, for the test to call; #who: what useSession() says;
// window.nextAuthUpdate: useSession()'s update.
import { createElement as h } from 'react';
import { createRoot } from 'react-dom/client';
import {
  SessionProvider, useSession, getProviders, getCsrfToken, getSession, signIn, signOut,
} from 'next-auth/react';

function Who() {
  const { data, status, update } = useSession();
  window.nextAuthUpdate = update; // the client's update(data): POST /api/auth/session
  return h('p', { id: 'who', 'data-status': status }, data ? data.user.email : status);
}

window.nextAuth = { getProviders, getCsrfToken, getSession, signIn, signOut };
createRoot(document.getElementById('root')).render(h(SessionProvider, null, h(Who)));
